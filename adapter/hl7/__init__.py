"""Pure HL7 v2 protocol code: builds messages from typed values, no I/O and no clock.

The readers' tokenizer (`adapter.readers.er7`) and the ACK code will move here when the
service is restructured; the outbound DFT^P03 builder starts here.
"""
