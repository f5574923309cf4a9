"""The REST bodies as pydantic models: ``bodies`` (requests, validated) and ``answers`` (serialised).

One model per body does both jobs: it checks (or builds) the JSON and it is the body's schema in
/openapi.json, where every public model of these modules is a component.
"""
