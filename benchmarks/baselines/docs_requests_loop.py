"""The way Tallyfy's docs' code samples do it: ``requests``, page by page, one run at a time.

This is the list sample (``requests.get`` with ``per_page`` 10, as in the docs) and the
archive sample (``requests.delete`` on ``/runs/{id}``) put in the loop people write around
them: fetch a page, archive each run on it, then fetch the next page, until the page number
passes ``total_pages``. There is no retry and no pacing, as in the samples: a failed
request is printed and the loop carries on (a failed list request ends it).

Archiving while paging is the trap: each archived run leaves the live result set, so page
2 of what is left is page 3 of what there was, and about half the runs are skipped. It is
measured as written.

    TALLYFY_BASE_URL=… TALLYFY_ORG_ID=… TALLYFY_ACCESS_TOKEN=… \
        python -m benchmarks.baselines.docs_requests_loop --status complete
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import requests

from benchmarks.clients.report import Meter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", default="complete")
    parser.add_argument("--per-page", type=int, default=10, help="as in the docs' sample")
    parser.add_argument("--time-cap", type=float, default=0.0, help="stop after this long")
    args = parser.parse_args()

    access_token = os.environ.get("TALLYFY_ACCESS_TOKEN", "YOUR_PERSONAL_ACCESS_TOKEN")
    org_id = os.environ.get("TALLYFY_ORG_ID", "YOUR_ORGANIZATION_ID")
    base = os.environ.get("TALLYFY_BASE_URL", "https://go.tallyfy.com/api")
    api_url = f"{base}/organizations/{org_id}/runs"
    headers = {
        "Authorization": f"Bearer {access_token}",
        "Accept": "application/json",
        "X-Tallyfy-Client": "APIClient",
    }

    meter = Meter()
    archived = failed = 0
    errors: dict[str, int] = {}
    capped = False
    meter.start()
    page = 1
    while True:
        params = {"status": args.status, "per_page": args.per_page, "page": page}
        try:
            response = requests.get(api_url, headers=headers, params=params)
            response.raise_for_status()
            processes_data = response.json()
        except requests.exceptions.RequestException as e:
            print(f"Request failed: {e}", file=sys.stderr)
            errors["list"] = errors.get("list", 0) + 1
            break
        for run in processes_data["data"]:
            run_url = f"{api_url}/{run['id']}"
            meter.mutation_sent()
            try:
                response = requests.delete(run_url, headers=headers)
                response.raise_for_status()
                archived += 1
            except requests.exceptions.HTTPError as e:
                failed += 1
                key = str(e.response.status_code)
                errors[key] = errors.get(key, 0) + 1
            except requests.exceptions.RequestException:
                failed += 1
                errors["transport"] = errors.get("transport", 0) + 1
        if args.time_cap and time.perf_counter() - meter.wall0 > args.time_cap:
            capped = True
            break
        if page >= processes_data["meta"]["pagination"]["total_pages"]:
            break
        page += 1
    meter.stop()
    meter.emit(ok=archived, failed=failed, pages=page, errors=errors, capped=capped)


if __name__ == "__main__":
    main()
