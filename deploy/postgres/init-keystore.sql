-- Runs once, when the postgres container initialises an empty data volume (deploy/compose.yaml).
-- The wrapped per-subject keys live in their own database (CONSENTGATE_KEYSTORE_URL), so that a
-- restored backup of the main database cannot bring an erased subject back (SECURITY.md). In
-- production put the key store on a separate server with its own credentials and a short backup
-- retention; one server with two databases is the small-deployment compromise shown here.
CREATE DATABASE consentgate_keys OWNER consentgate;
