"""The Python API (`convertctl.convert`, `Result`): the names are handed on
lazily by convertctl/__init__.py, so `import convertctl` stays light."""
