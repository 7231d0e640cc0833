"""Parses Kafka records the bridge made with the CloudEvents Python SDK (cloudevents 2.2.0).

Input: a file of JSON lines, one record each: {"key": str, "headers": {name: value}, "value":
str}. Each record is read in the mode its content type names (the Kafka protocol binding:
application/cloudevents+json is structured, anything else binary); the SDK refuses a record
that is not a valid CloudEvent. Prints "parsed <structured> structured, <binary> binary".
"""

import json
import sys

from cloudevents.v1.kafka import KafkaMessage, from_binary, from_structured


def main(path: str) -> None:
    counts = {"structured": 0, "binary": 0}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            record = json.loads(line)
            headers = {name: value.encode() for name, value in record["headers"].items()}
            message = KafkaMessage(headers, record["key"].encode(), record["value"].encode())
            structured = headers["content-type"].startswith(b"application/cloudevents+json")
            event = from_structured(message) if structured else from_binary(message)
            expected = {
                "specversion": "1.0",
                "id": record["headers"]["telecmi-event-id"],
                "partitionkey": record["key"],
            }
            for name, value in expected.items():
                found = event[name]
                # The SDK takes the partition key from the record key, as bytes.
                if isinstance(found, bytes):
                    found = found.decode()
                if found != value:
                    sys.exit(f"line {number}: {name} is {found!r}, not {value!r}")
            for name in ("source", "type", "subject", "dataschema", "envelopeversion"):
                if not event.get(name):
                    sys.exit(f"line {number}: no {name}")
            if not isinstance(event.get_data(), dict) or "conversation_id" not in event.get_data():
                sys.exit(f"line {number}: data is not the envelope's data")
            counts["structured" if structured else "binary"] += 1
    print(f"parsed {counts['structured']} structured, {counts['binary']} binary")


if __name__ == "__main__":
    main(sys.argv[1])
