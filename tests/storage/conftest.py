from .s3server import *  # noqa: F403  (moto_server, moto_s3, aws_test_env)
