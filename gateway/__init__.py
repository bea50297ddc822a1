"""consentgate: a safety and consent moderation gateway for generative media."""
