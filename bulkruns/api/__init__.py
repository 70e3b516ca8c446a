"""Tallyfy's run endpoints: the client (the only HTTP code), what its answers mean, and
where the API is (URL rules shared by the client, the lock and the result log)."""

from bulkruns.api.answers import Page, Reply, parse_rate_limit, parse_retry_after
from bulkruns.api.client import MAX_PER_PAGE, Client
from bulkruns.api.urls import DEFAULT_BASE_URL, is_loopback_host, normalise_base_url, server_key
from bulkruns.errors import RateLimitInfo

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_PER_PAGE",
    "Client",
    "Page",
    "RateLimitInfo",
    "Reply",
    "is_loopback_host",
    "normalise_base_url",
    "parse_rate_limit",
    "parse_retry_after",
    "server_key",
]
