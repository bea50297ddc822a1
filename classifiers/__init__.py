"""Model families (one Protocol each) and their adapters, registered explicitly by name."""
