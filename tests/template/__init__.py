"""template.yaml: it lints clean, and what it would deploy is least-privilege and complete.

The checks read the template resolved as CloudFormation would (resolver.py), mostly for five
configurations (support.py; the ``configuration`` and ``stack`` fixtures of conftest.py): the
defaults (create one user and the sending group), adopting an existing user with a KMS key and an
identity scope, joining the SES console's existing sending group, three users (two created, one
adopted) with a KMS key, and an organisation's (functions in a VPC, a permissions boundary, more
memory).

One module per concept: test_lint (cfn-lint, sam validate), test_parameters (what CloudFormation
accepts and refuses), test_least_privilege (every policy; the rotation role), test_retirement_role,
test_secrets (each user's secret: binding, resource policy, KMS, rotation schedule, invoke
permission), test_smtp_users (the users and their sending group), test_functions (runtime,
timeouts, environment), test_organisation (VPC, permissions boundary, memory), test_notifications
(topic, alarms, the RotationFailed rule, the retirement function's failure destination),
test_encryption (what the deployment's KMS key encrypts), test_scanner (the findings checkov is told
to skip, and why), test_outputs, test_users_per_stack (IAM's and Lambda's limits), test_resolver
(the resolver itself).
"""
