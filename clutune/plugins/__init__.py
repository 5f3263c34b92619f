"""Plugin plumbing: the name registry, a method's own files, and the check-method kit."""
