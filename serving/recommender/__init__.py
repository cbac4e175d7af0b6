"""The recommender service: /recommend, /events, /similar."""
