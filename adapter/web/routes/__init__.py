"""One module per route or page. The HTTP API is wired by `api` (the route table: `fhir_*`,
`hl7`, `review`, `admin`, `outbox`, `health`); the workbench pages by `adapter.web.app_ui`
(`login`, `worklist`, `encounter`, `coded`, `refused`, `reports`)."""
