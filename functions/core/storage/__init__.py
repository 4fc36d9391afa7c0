"""Storage adapters: the only code that speaks to DynamoDB, S3 and SQS.

One module per store, and the AWS plumbing they share written once in `aws.py`:

- `aws`: clients (created lazily, never at import), retries, batch writes, attribute codecs
- `events`: the events table (hits and traits), and records read back from it
- `membership`: the membership table (the segments each visitor is in)
- `partners`: the partners table (partner keys, stored as hashes)
- `catalog`: the catalog table (the published build, as the lookup serves it)
- `suppression`: the suppression table (visitors who opted out or were erased)
- `bucket`: the segments bucket (definitions, builds and their documents)
- `partner_exports`: a partner's exports as the lookup hands them out (pre-signed URLs)
- `fallback`: the SQS queue of hits DynamoDB would not take

Import the module you need, not this package: the pixel's cold start pays for what it
imports, so nothing is re-exported here.
"""
