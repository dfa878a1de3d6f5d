"""Run the migration on Apache Spark (``--engine spark``); needs the ``[spark]`` extra.

Importing this package does not import pyspark; ``migrate_spark`` does, when called.
"""

from .runner import SparkEngine, migrate_spark, migrate_spark_tables, spark_session

__all__ = ["SparkEngine", "migrate_spark", "migrate_spark_tables", "spark_session"]
