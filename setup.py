"""The one thing pyproject.toml cannot say: spoolbus.cbor's optional C decoder for CPython hosts.

optional=True: where no C compiler is found, the install goes on and spoolbus.cbor decodes in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("spoolbus._cbor_c", ["csrc/cbor_c.c"], optional=True)])
