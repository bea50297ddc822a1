"""Fuzz targets for the gateway's parsers of hostile input (media intake, the policy loader).

Each target runs under atheris (coverage-guided) or as a plain bounded random-input loop; see
`fuzz/targets.py` and docs/hardening.md."""
