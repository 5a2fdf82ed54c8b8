# the compiled default access-log line (_accesslog.c); the reference: accesslog.Writer.doc
from typing import Any

def json_line(ex: Any, logger: Any, offset: float) -> bytes: ...
