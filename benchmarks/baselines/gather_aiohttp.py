"""The "make it fast" way: list every page, then ``asyncio.gather`` an archive per ID.

aiohttp with its default connection pool (100 connections), no pacing and no retry: every
request that fails (a 429 above all) is counted and left failed. Listing is done first and
sequentially, so the offsets do not drift; the cost is paid in throttling instead.

    TALLYFY_BASE_URL=… TALLYFY_ORG_ID=… TALLYFY_ACCESS_TOKEN=… \
        python -m benchmarks.baselines.gather_aiohttp --status complete
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import Counter

import aiohttp

from benchmarks.clients.report import Meter


async def _main(args: argparse.Namespace) -> None:
    org_id = os.environ["TALLYFY_ORG_ID"]
    api_url = f"{os.environ['TALLYFY_BASE_URL']}/organizations/{org_id}/runs"
    headers = {
        "Authorization": f"Bearer {os.environ['TALLYFY_ACCESS_TOKEN']}",
        "Accept": "application/json",
        "X-Tallyfy-Client": "APIClient",
    }
    meter = Meter()
    statuses: Counter[str] = Counter()
    meter.start()
    async with aiohttp.ClientSession(headers=headers) as session:
        ids: list[str] = []
        page = 1
        while True:
            params = {"status": args.status, "per_page": "100", "page": str(page)}
            async with session.get(api_url, params=params) as response:
                if response.status != 200:
                    statuses[f"list {response.status}"] += 1
                    break
                body = await response.json()
            ids.extend(run["id"] for run in body["data"])
            if page * 100 >= body["meta"]["pagination"]["total"]:
                break
            page += 1

        async def archive(run_id: str) -> bool:
            meter.mutation_sent()
            try:
                async with session.delete(f"{api_url}/{run_id}") as response:
                    await response.read()
                    statuses[str(response.status)] += 1
                    return response.status == 200
            except aiohttp.ClientError as exc:
                statuses[type(exc).__name__] += 1
                return False

        results = await asyncio.gather(*(archive(run_id) for run_id in ids))
    meter.stop()
    ok = sum(results)
    meter.emit(ok=ok, failed=len(results) - ok, listed=len(ids), statuses=dict(statuses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", default="complete")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
