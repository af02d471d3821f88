"""Monitoring beyond one process's /metrics: the whole server's metrics with ``--workers N``
(:mod:`.snapshot`, :mod:`.cluster`), the figures the dashboard and the periodic report share
(:mod:`.figures`), and the live dashboard page (:mod:`.dashboard`)."""
