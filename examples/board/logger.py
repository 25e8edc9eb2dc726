"""Logger app: serves logger.append (one line per call in ROOT/log.txt) and logger.count; hears events."""

from app import serve_until_stopped, start
from contracts import EVENT, LOGGER
from services import Logger

nd, root = start("logger")
log = Logger(root + "/log.txt")
nd.serve(LOGGER, log)
nd.subscribe(EVENT, log.heard)
serve_until_stopped(nd, root)
