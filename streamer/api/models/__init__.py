"""The REST bodies as pydantic models: ``bodies`` (requests, validated).

One model per body does both jobs: it checks the JSON and it is the body's schema in /openapi.json.
"""
