"""Reads a Delta table written by sluice with two independent readers, the `deltalake`
package (delta-rs's Python binding, through pyarrow) and Polars, and prints what each
sees as JSON: rows, distinct keys, a column's sum, the table's version and data files,
and the versions of the application transactions named.

usage: delta_check.py <table uri> <key columns, comma separated> <sum column> [app id ...]
S3 settings come from the AWS_* environment variables (endpoint, keys, region).
"""

import json
import os
import sys

import polars as pl
from deltalake import DeltaTable


def storage_options():
    keys = {
        "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION": "AWS_REGION",
        "AWS_ALLOW_HTTP": "AWS_ALLOW_HTTP",
    }
    return {k: os.environ[v] for k, v in keys.items() if v in os.environ}


def main():
    uri, keys, total = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    apps = sys.argv[4:]
    options = storage_options()
    dt = DeltaTable(uri, storage_options=options)
    arrow = pl.from_arrow(dt.to_pyarrow_table())
    polars = pl.read_delta(uri, storage_options=options)
    out = {"version": dt.version(), "files": len(dt.file_uris())}
    for name, frame in (("deltalake", arrow), ("polars", polars)):
        out[name] = {
            "rows": frame.height,
            "distinct": frame.select(keys).unique().height,
            "sum": int(frame[total].sum() or 0),
        }
    out["txn"] = {app: dt.transaction_version(app) for app in apps}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
