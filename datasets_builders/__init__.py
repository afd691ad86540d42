"""Dataset builders (``vidalign build <name>``): each module registers one builder on import."""
