"""Networks and volumes through the docker CLI and docker-compose, against a real berthd."""
