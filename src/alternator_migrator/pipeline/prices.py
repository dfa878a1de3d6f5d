"""AWS list prices the `plan` cost estimate uses: kept here, never fetched (no network call).

Prices change and differ by region; the plan prints this table's date and region next to every
figure and calls the result an estimate. Update the numbers and the date together.
"""

from __future__ import annotations

from typing import Final

REGION: Final = "us-east-1"
AS_OF: Final = "2024-11-01"  # DynamoDB on-demand prices were halved on that day
SOURCE: Final = "aws.amazon.com/dynamodb/pricing, aws.amazon.com/kinesis/data-streams/pricing"
CURRENCY: Final = "USD"

PRICES: Final[dict[str, float]] = {
    # DynamoDB, Standard table class
    "dynamodb_read_request_unit": 0.125 / 1e6,  # on-demand, per read request unit
    "dynamodb_write_request_unit": 0.625 / 1e6,  # on-demand, per write request unit
    "dynamodb_rcu_hour": 0.00013,  # provisioned, per RCU-hour
    "dynamodb_wcu_hour": 0.00065,  # provisioned, per WCU-hour
    "dynamodb_export_gb": 0.10,  # export to S3, per GB of table data
    "dynamodb_pitr_gb_month": 0.20,  # continuous backups, per GB-month
    "dynamodb_streams_read_request": 0.02 / 100_000,  # GetRecords calls (first 2.5M/month free)
    "dynamodb_kinesis_cdc_unit": 0.10 / 1e6,  # change data capture unit (1 KB write) to Kinesis
    # Kinesis Data Streams, provisioned mode
    "kinesis_shard_hour": 0.015,
    "kinesis_extended_retention_shard_hour": 0.02,  # retention beyond 24 h, up to 7 days
    "kinesis_put_payload_unit": 0.014 / 1e6,  # per 25 KB PUT payload unit
    # Data transfer out of AWS to the internet, first 10 TB a month
    "transfer_out_gb": 0.09,
}


def price(name: str) -> float:
    return PRICES[name]
