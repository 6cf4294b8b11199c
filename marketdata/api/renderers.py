"""Renderers and content negotiation: CSV for candles, and a 400 for an unknown ?format=."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import orjson
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

from marketdata.api.serializers import CandleSerializer


class FastJSONRenderer(JSONRenderer):
    """DRF's JSON renderer, through orjson: a page of thousands of rows in a fraction of a ms.

    Indented output (asked for with `Accept: application/json; indent=4`), and what orjson
    cannot encode, still go through DRF's own renderer.
    """

    encoder = JSONEncoder()

    def default(self, value: Any) -> Any:
        # DRF's encoder turns a Decimal into a float; prices never leave as floats.
        if isinstance(value, Decimal):
            return format(value, "f")
        return self.encoder.default(value)

    def render(self, data: Any, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        if self.get_indent(accepted_media_type, renderer_context or {}):
            return super().render(data, accepted_media_type, renderer_context)
        try:
            # Datetimes go through DRF's encoder too, for its "Z" notation.
            return orjson.dumps(data, default=self.default, option=orjson.OPT_PASSTHROUGH_DATETIME)
        except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits in stored JSON
            return super().render(data, accepted_media_type, renderer_context)


class CandleCSVRenderer(BaseRenderer):
    """A page of candles as CSV with a header row; the next page is in the Link header."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"
    columns = CandleSerializer.CSV_HEADER

    def render(self, data: Any, accepted_media_type=None, renderer_context=None) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        rows = data.get("results", []) if isinstance(data, dict) else []
        for row in rows:
            writer.writerow(
                [
                    str(row[name]).lower() if name == "is_final" else row[name]
                    for name in self.columns
                ]
            )
        return buffer.getvalue().encode(self.charset)


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, but a ?format= no renderer offers is a bad parameter, not a 404."""

    def filter_renderers(self, renderers, format):
        matching = [renderer for renderer in renderers if renderer.format == format]
        if not matching:
            offered = ", ".join(renderer.format for renderer in renderers)
            raise ValidationError({"format": [f"unknown format; one of {offered}"]})
        return matching
