"""Input hygiene: every value from a user checked before it reaches a path, a store or memory."""
