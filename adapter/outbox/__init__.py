"""The outbound side: what the outbox worker hands a destination (`sink.py`) and the sinks
(`fhir_put.py`: FHIR PUT to the downstream server). The worker is `outbox/deliverer.py`."""
