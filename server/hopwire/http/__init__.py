"""Wire bytes, flow control, and the downstream and upstream HTTP/1.1 protocols."""
