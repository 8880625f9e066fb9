"""Items as DynamoDB holds them: `store.aws.item` and `plain` answer exactly what boto3's TypeSerializer and
TypeDeserializer answer (they make text, maps and lists themselves, for speed), botocore's request check
(which the DynamoDB client skips) never refused one, and item sizes count numbers the same whichever way
they are measured."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import botocore.session
import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.validate import ParamValidator
from hypothesis import given
from hypothesis import strategies as st

from segment_bridge.limits import item_size
from segment_bridge.store.aws import item, plain
from segment_bridge.values import to_dynamo

numbers = st.integers(min_value=-(10**37), max_value=10**37) | st.decimals(
    allow_nan=False, allow_infinity=False, places=4, min_value=-(10**20), max_value=10**20
)
scalars = (
    st.none()
    | st.booleans()
    | numbers
    | st.text(max_size=8)
    | st.binary(max_size=4)
    | st.frozensets(st.text(max_size=4), min_size=1, max_size=3)
    | st.sets(st.integers(-100, 100), min_size=1, max_size=3)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(min_size=1, max_size=6), values, max_size=5))
def test_an_item_is_written_and_read_exactly_as_boto3_serialises_and_deserialises_it(values: dict[str, Any]):
    expected = {
        name: TypeSerializer().serialize(value) for name, value in values.items() if value is not None
    }
    assert item(values) == expected
    assert plain(expected) == {name: TypeDeserializer().deserialize(v) for name, v in expected.items()}


@pytest.mark.parametrize(
    "value",
    [1.5, float("nan"), 10**40, {"nested": [1.5]}, {"d": Decimal("Infinity")}],
)
def test_a_value_boto3_refuses_is_refused_by_item_with_the_same_error(value: Any):
    with pytest.raises(Exception) as refused:  # noqa: PT011 (whatever boto3 raises)
        TypeSerializer().serialize(value)
    with pytest.raises(refused.type):
        item({"v": value})


def test_binary_and_sets_read_back_as_boto3_reads_them():
    stored = item({"b": b"\x00\x01", "ss": {"a", "b"}, "ns": {1, 2}, "n": 7, "null": None, "t": True})
    assert plain(stored) == {
        "b": Binary(b"\x00\x01"),
        "ss": {"a", "b"},
        "ns": {Decimal(1), Decimal(2)},
        "n": 7,
        "t": True,
    }


@given(st.integers(min_value=-(10**45), max_value=10**45) | numbers)
def test_a_number_counts_its_significant_digits_whether_int_or_decimal(number: int | Decimal):
    digits = Decimal(number).as_tuple().digits
    significant = "".join(map(str, digits)).strip("0") or "0"
    assert item_size({"n": number}) == 1 + (len(significant) + 1) // 2 + 1


@given(values)
def test_to_dynamo_leaves_text_and_integers_as_they_are(value: Any):
    converted = to_dynamo({"v": value, "s": "text", "i": 12})
    assert converted["s"] == "text"
    assert converted["i"] == 12


@given(st.dictionaries(st.text(min_size=1, max_size=6), values, min_size=1, max_size=5))
def test_every_item_we_make_passes_the_request_check_the_dynamodb_client_skips(values: dict[str, Any]):
    """DYNAMODB_CONFIG turns botocore's parameter validation off: it never refused an item `item` makes,
    so no request changes its fate (an AWS refusal is still mapped by aws_errors as before)."""
    model = botocore.session.get_session().get_service_model("dynamodb")
    attributes = item(values)
    requests = {
        "PutItem": {"TableName": "t", "Item": attributes, "ExpressionAttributeValues": item({":v": 1})},
        "BatchWriteItem": {"RequestItems": {"t": [{"PutRequest": {"Item": attributes}}]}},
        "BatchGetItem": {"RequestItems": {"t": {"Keys": [attributes], "ConsistentRead": True}}},
    }
    for operation, params in requests.items():
        report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()
