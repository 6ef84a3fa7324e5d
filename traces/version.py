"""The installed moecache version, stamped into every trace and result."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("moecache")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
