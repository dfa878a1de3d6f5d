"""alternator-migrator: live migration of a DynamoDB table to ScyllaDB Alternator."""

__version__ = "0.1.0"
