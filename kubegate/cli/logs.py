"""How kubegate's long-running commands (`serve`, `webshell`) log: text, or one JSON object per line."""

from __future__ import annotations

import logging


def configure_logging(level: str, fmt: str, worker: int = 0) -> None:
    """`worker`: this is worker N of `serve --workers`; its lines say so."""
    handler = logging.StreamHandler()
    if fmt == "json":
        # One JSON object per line, for log shippers: time, level, logger, message (and any extra).
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                                           static_fields={"worker": worker} if worker else None))
    else:
        where = f" [worker {worker}]" if worker else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{where}: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
