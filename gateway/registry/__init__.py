"""Why: the consent registry — who is enrolled, under which consent, and how to recognise them — as a
library with one service object, so the API, CLI and pipeline share one implementation.

Import from the modules (this package imports nothing, so `gateway.registry.facts` stays cheap):
`service.Registry` (the service; `service.RegistryFaults` its fault hook), `store.create_tables`
(main database), `crypto.FileKek` / `crypto.KeyStore` / `crypto.SubjectCrypto` (envelope encryption),
`index.FaceIndex` (vector search), `facts` (what the decision reads), `errors` (the error tree),
`models` (tables and the Public read models).
"""
