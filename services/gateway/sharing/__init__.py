"""GraphQL for sharing: discussion (comments, proposed measures) and lessons learned."""
