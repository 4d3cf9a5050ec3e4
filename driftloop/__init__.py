"""driftloop: fast, mergeable drift and quality checks for SageMaker endpoints, and the loop
around them."""

from driftloop.batch import FeatureBatch
from driftloop.errors import DriftloopError, MalformedLog
from driftloop.schema import Schema

__version__ = "0.1.0"
__all__ = ["DriftloopError", "FeatureBatch", "MalformedLog", "Schema", "__version__"]
