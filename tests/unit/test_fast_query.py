"""bridge_dev.fast_query narrows what moto's Query looks at, never what it answers: on random tables
(with an index on the table's partition key and one on another attribute, items with and without the
index's sort key), every Query, its pages, limits, directions and key conditions, answers the same with
and without it."""

from __future__ import annotations

from typing import Any

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from bridge_dev import fast_query

PARTITIONS = ["p0", "p1", "p2"]
SORTS = [f"s{n}" for n in range(6)]
TIMES = ["t0", "t1", "t1x", "t2"]
GROUPS = ["g0", "g1"]

item_strategy = st.fixed_dictionaries(
    {"pk": st.sampled_from(PARTITIONS), "sk": st.sampled_from(SORTS)},
    optional={"t": st.sampled_from(TIMES), "g": st.sampled_from(GROUPS), "n": st.integers(0, 3)},
)
query_strategy = st.fixed_dictionaries(
    {
        "index": st.sampled_from([None, "by_t", "by_g"]),
        "limit": st.one_of(st.none(), st.integers(1, 4)),
        "forward": st.booleans(),
        "condition": st.sampled_from([None, "<", ">=", "begins_with", "between"]),
        "partition": st.sampled_from(PARTITIONS + GROUPS),
        "bound": st.sampled_from(SORTS + TIMES),
    }
)


def make_table(client: Any) -> None:
    client.create_table(
        TableName="T",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "t", "g")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_t",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "t", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["n"]},
            },
            {
                "IndexName": "by_g",
                "KeySchema": [
                    {"AttributeName": "g", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    )


def every_page(client: Any, query: dict[str, Any]) -> list[Any]:
    hash_name = "g" if query["index"] == "by_g" else "pk"
    range_name = "t" if query["index"] == "by_t" else "sk"
    condition = f"{hash_name} = :h"
    values: dict[str, Any] = {":h": {"S": query["partition"]}}
    bound = {"S": query["bound"]}
    if query["condition"] == "begins_with":
        condition += f" AND begins_with({range_name}, :b)"
        values[":b"] = {"S": query["bound"][:1]}
    elif query["condition"] == "between":
        condition += f" AND {range_name} BETWEEN :b AND :c"
        values |= {":b": bound, ":c": {"S": query["bound"] + "z"}}
    elif query["condition"]:
        condition += f" AND {range_name} {query['condition']} :b"
        values[":b"] = bound
    arguments: dict[str, Any] = {
        "TableName": "T",
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": query["forward"],
    }
    if query["index"]:
        arguments["IndexName"] = query["index"]
    if query["limit"]:
        arguments["Limit"] = query["limit"]
    pages = []
    for _ in range(50):
        answer = client.query(**arguments)
        pages.append((answer["Items"], answer.get("LastEvaluatedKey")))
        if "LastEvaluatedKey" not in answer:
            break
        arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
    return pages


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(item_strategy, max_size=25), queries=st.lists(query_strategy, min_size=1, max_size=6))
def test_a_narrowed_query_answers_what_moto_answers(items, queries):
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        make_table(client)
        for values in items:
            item = {name: {"N": str(v)} if name == "n" else {"S": v} for name, v in values.items()}
            client.put_item(TableName="T", Item=item)
        installed = fast_query.installed()  # a local stack started in this process installs it
        try:
            fast_query.uninstall()
            moto_answers = [every_page(client, query) for query in queries]
            fast_query.install()
            narrowed = [every_page(client, query) for query in queries]
        finally:
            (fast_query.install if installed else fast_query.uninstall)()
        assert narrowed == moto_answers
