"""The support model: retrieve → generate → rank replies to shoppers, learning from feedback."""
