"""The settings each stage of the connection asks for (and freezes once active): a module without pydantic, so
`bufsync --help` lists the connect command's flags without loading the settings models."""

STAGE_KEYS: dict[int, tuple[str, ...]] = {
    2: ("test_lrs_url", "test_key", "test_secret"),
    4: ("lrs_url", "key", "secret", "s3_endpoint", "s3_bucket", "s3_access_key", "s3_secret_key", "s3_user_id"),
}
FROZEN = STAGE_KEYS[2] + STAGE_KEYS[4] + ("s3_public_base", "s3_acl", "s3_region")
