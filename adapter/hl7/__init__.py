"""Pure HL7 v2 protocol code: no I/O, no clock (`now` and ids are arguments), no settings.

- `er7`: the ER7 tokenizer (segments, fields, escapes) the readers parse with;
- `hl7_time`: HL7 DTM timestamps;
- `mllp_framing`: the sans-I/O MLLP decoder and `encode_frame`;
- `ack`: the one ACK builder (typed `AckCode`, control id, ERR location) used by the MLLP
  server, the HTTP `POST /hl7` route and read by the `send` client;
- `dft`, `dft_profile`, `er7_text`: the outbound DFT^P03 builder.

It may build from the core's values, never from the service, the store or a reader
(tests/test_architecture.py).
"""
