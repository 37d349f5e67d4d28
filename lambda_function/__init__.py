"""Rotation of Amazon SES SMTP credentials for AWS Secrets Manager."""
