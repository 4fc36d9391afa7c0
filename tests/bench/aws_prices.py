"""AWS's published on-demand list prices that `make bench` turns measured requests, bytes
and milliseconds into dollars with (tests/bench/bench_cost.py). Every price is here and
nowhere else, each with the page it was read from, so a new price is one edited line.

First tier of each price (free tiers left out: they are per account, not per hit), in
`REGION`, as read on `READ_ON` from the pages named (stored copies of them, read through
the project's search index; check the live pages before quoting a figure to a customer).
Each constant is in dollars per ONE unit of what its name says, written as the page
prints it (`0.625 / MILLION` is "$0.625 per million").
"""

from __future__ import annotations

REGION = "us-east-1"
READ_ON = "2026-11-29"

MILLION = 1_000_000
# Data transfer and storage are billed per GB of 2**30 bytes.
GB = 2**30

# https://aws.amazon.com/lambda/pricing/ (x86, first 6 billion GB-seconds a month;
# duration billed per 1 ms, memory in MB / 1024 as GB)
LAMBDA_GB_SECOND = 0.0000166667
LAMBDA_REQUEST = 0.20 / MILLION

# https://aws.amazon.com/dynamodb/pricing/on-demand/ (Standard table class, after the
# 50 % cut to on-demand throughput of 1 November 2024): a write request unit writes up
# to 1 KB, a read request unit reads up to 4 KB strongly consistent (half a unit
# eventually consistent); transactional writes take two units per 1 KB.
DYNAMODB_WRITE_REQUEST_UNIT = 0.625 / MILLION
DYNAMODB_READ_REQUEST_UNIT = 0.125 / MILLION
# https://aws.amazon.com/dynamodb/pricing/on-demand/ (past the first 25 GB; each item
# counts 100 bytes of overhead besides its own size)
DYNAMODB_STORAGE_GB_MONTH = 0.25

# https://aws.amazon.com/api-gateway/pricing/ (first 300 million HTTP API requests a
# month, metered in 512 KB increments; first 333 million REST API requests)
HTTP_API_REQUEST = 1.00 / MILLION
REST_API_REQUEST = 3.50 / MILLION

# https://aws.amazon.com/cloudfront/pricing/ (United States, Mexico, Canada and Europe,
# which PRICE_CLASS_100 serves from; first 10 TB a month out to the internet; origin
# fetches from AWS origins are free)
CLOUDFRONT_HTTPS_REQUEST = 0.0100 / 10_000
CLOUDFRONT_TRANSFER_OUT_GB = 0.085

# https://aws.amazon.com/s3/pricing/ (S3 Standard: PUT, COPY, POST and LIST requests;
# GET, SELECT and all other requests; DELETE is free; first 50 TB a month of storage)
S3_PUT_REQUEST = 0.005 / 1_000
S3_GET_REQUEST = 0.0004 / 1_000
S3_STORAGE_GB_MONTH = 0.023

# https://aws.amazon.com/sqs/pricing/ (standard queue, per 64 KB chunk of a request)
SQS_REQUEST = 0.40 / MILLION

# https://aws.amazon.com/step-functions/pricing/ (Standard workflows; every state
# entered is a transition, a retry included)
STEP_FUNCTIONS_STATE_TRANSITION = 0.025 / 1_000

# https://aws.amazon.com/cloudwatch/pricing/ (logs collected, Standard class; Lambda's
# logs are vended logs, whose first 10 TB a month cost the same)
CLOUDWATCH_LOGS_INGESTED_GB = 0.50

# https://aws.amazon.com/xray/pricing/ (traces recorded, past the first 100,000 a month)
XRAY_TRACE_RECORDED = 5.00 / MILLION
