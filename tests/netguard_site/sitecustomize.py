"""Installs tests/netguard.py in every Python process the test suite starts (on PYTHONPATH only there)."""

import importlib.util
import os

_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "netguard.py")
if os.environ.get("ASSETLINE_NETGUARD_LOG") and os.path.exists(_path):
    _spec = importlib.util.spec_from_file_location("assetline_netguard", _path)
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.install()
