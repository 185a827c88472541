"""Checks the management API's OpenAPI document, and real exchanges against it.

    check_openapi.py DOCUMENT [EXCHANGES]

DOCUMENT is validated as OpenAPI 3.1 (openapi-spec-validator). EXCHANGES, when given, is a JSON
file of exchanges recorded from the real API: [{"method", "path" (the route pattern), "status",
"request"?, "response"?}]. Each request body the server accepted must match the operation's
request schema, and each response body must match the schema documented for its status. The
document cannot then promise a shape the server does not produce, or refuse one it accepts.
Prints one line per problem and exits 1 if there is any; the last line counts what was checked.
"""

import json
import sys

import jsonschema
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def schema_validator(document, schema):
    # The schema refers to "#/components/schemas/X" of the document: it is placed inside the
    # document, so that those references resolve against it.
    contents = dict(document, __schema__=schema)
    resource = Resource.from_contents(contents, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:flagstaff:openapi", resource)
    return jsonschema.Draft202012Validator(
        {"$ref": "urn:flagstaff:openapi#/__schema__"}, registry=registry
    )


def main():
    with open(sys.argv[1]) as f:
        document = json.load(f)
    validate(document)
    problems = []
    checked = 0
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            exchanges = json.load(f)
        for x in exchanges:
            where = f'{x["method"].upper()} {x["path"]} {x["status"]}'
            operation = document["paths"].get(x["path"], {}).get(x["method"].lower())
            if operation is None:
                problems.append(f"{where}: not documented")
                continue
            if "request" in x and 200 <= x["status"] < 300:
                content = operation.get("requestBody", {}).get("content", {})
                schema = content.get("application/json", {}).get("schema")
                if schema is None:
                    problems.append(f"{where}: a body was accepted but none is documented")
                else:
                    for error in schema_validator(document, schema).iter_errors(x["request"]):
                        problems.append(f"{where} request {list(error.absolute_path)}: {error.message}")
                    checked += 1
            response = operation.get("responses", {}).get(str(x["status"]))
            if response is None:
                problems.append(f"{where}: status not documented")
                continue
            if "response" in x:
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema is None:
                    problems.append(f"{where}: a body was sent but none is documented")
                    continue
                for error in schema_validator(document, schema).iter_errors(x["response"]):
                    problems.append(f"{where} response {list(error.absolute_path)}: {error.message}")
                checked += 1
    for problem in problems:
        print(problem)
    print(f"openapi: document valid; {checked} bodies checked; {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
