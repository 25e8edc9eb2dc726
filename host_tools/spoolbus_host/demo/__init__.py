"""`spoolbus demo`: a whole fleet on one machine (docs/demo.md). Imported only by `cli.demo`.
"""
