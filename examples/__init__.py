"""Runnable examples: a reference upstream model server and clients of the gateway."""
