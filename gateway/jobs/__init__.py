"""Jobs: video (and other long work) decided and released outside the request, by a bounded
worker pool per replica, with state in the shared database and files in a job store so that any
replica can run or serve any job. See `service` (the entry points), `store` (the table and its
state machine), `runner` (workers, leases, recovery), `storage` (files), `webhook`."""

from gateway.jobs.service import JobService, open_jobs

__all__ = ["JobService", "open_jobs"]
