"""The Университет 2035 settings (`portals.u2035` in bufsync.yaml; docs/portals/u2035.md says what each is for).

`bufsync u2035 connect` fills the connection keys (credentials, S3) into the config file, where every other secret
of bufsync lives; once the connection is active they are frozen until `bufsync u2035 disable`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from bufsync.portals.settings import PortalSettings
from bufsync.validation import StrictModel, http_url

Fact = Literal["enrolment", "activity", "grade", "completion", "submission"]
ALL_FACTS: tuple[Fact, ...] = ("enrolment", "activity", "grade", "completion", "submission")
TEST_LRS = "https://lrs-external.u2035test.ru/data/xAPI"
HOME_PAGE = "https://my.2035.university"

class Actor(StrictModel):
    """Whose footprint a statement is: the learner's UNTI id as an xAPI account."""

    source: Literal["buffer", "profile_field"] = Field(
        "buffer", description="buffer: buf_users.unti_id of the person whose external_id is the Moodle idnumber; "
                              "profile_field: a Moodle custom profile field (field)")
    field: str = Field("unti_id", pattern=r"^[A-Za-z0-9_-]{1,100}$",
                       description="the custom profile field's short name (with source: profile_field)")
    home_page: str = Field(HOME_PAGE, description="the account's homePage (the profile seen in the wild has no "
                                                  "trailing slash)")


class Verbs(StrictModel):
    """The verb id of each fact (the defaults are ADL's and Activity Streams'; a project may name its own)."""

    enrolment: str = Field("http://adlnet.gov/expapi/verbs/registered")
    activity: str = Field("http://adlnet.gov/expapi/verbs/completed")
    scored: str = Field("http://adlnet.gov/expapi/verbs/scored", description="a grade with no pass grade")
    passed: str = Field("http://adlnet.gov/expapi/verbs/passed", description="a grade at or above the pass grade")
    failed: str = Field("http://adlnet.gov/expapi/verbs/failed", description="a grade below the pass grade")
    completion: str = Field("http://adlnet.gov/expapi/verbs/completed", description="the course completed")
    submission: str = Field("http://activitystrea.ms/schema/1.0/submit", description="an assignment submitted")


class Profile(StrictModel):
    """How facts become statements: verbs, object ids and context extensions, per project."""

    verbs: Verbs = Field(default_factory=Verbs)
    object_base: str | None = Field(
        None, description="the prefix of object ids (default: the Moodle site URL): <base>/course/view.php?id=N, "
                          "<base>/mod/<module>/view.php?id=<cmid>")
    extensions: dict[str, Any] = Field(
        default_factory=dict, description="context extensions added to every statement (IRI -> value; str.format "
        "fields: {project}, {course_id}, {course_idnumber}, {course_shortname}, {cmid})")
    usage_type: str = Field("http://id.tincanapi.com/attachment/supporting_media",
                            description="the attachments' usageType (a submitted file)")
    language: str = Field("ru-RU", description="the language of names in the statements")


class U2035Settings(PortalSettings):
    """Университет 2035: the digital footprint as xAPI statements to its LRS and files to its S3 storage."""

    # the letters of stages 1 and 3
    organisation: str | None = Field(None, description="the university's full name, for the request letters")
    contact: str | None = Field(None, description="who answers for the connection: name, position, e-mail, phone")
    project: str = Field("", description="the federal project or programme (and the {project} of extensions)")
    # stage 2: the test contour
    test_lrs_url: str = Field(TEST_LRS, description="the test LRS (xAPI base; statements at <base>/statements)")
    test_key: SecretStr | None = Field(None, description="the test LRS's Basic key (from Университет 2035)")
    test_secret: SecretStr | None = Field(None, description="the test LRS's Basic secret")
    # stage 4: production
    lrs_url: str | None = Field(None, description="the production LRS (xAPI base)")
    key: SecretStr | None = Field(None, description="the production LRS's Basic key")
    secret: SecretStr | None = Field(None, description="the production LRS's Basic secret")
    s3_endpoint: str | None = Field(None, description="the S3 storage's endpoint (path-style addressing)")
    s3_bucket: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="the bucket")
    s3_access_key: SecretStr | None = Field(None, description="the S3 access key")
    s3_secret_key: SecretStr | None = Field(None, description="the S3 secret key")
    s3_user_id: str | None = Field(None, description="the S3 user id Университет 2035 issued (kept for the record)")
    s3_region: str = Field("us-east-1", description="the region S3 signatures name")
    s3_public_base: str | None = Field(None, description="the public base of file URLs (default: the endpoint): "
                                                         "fileUrl = <base>/<bucket>/<key>")
    s3_acl: str | None = Field("public-read", description="the ACL of uploaded files (empty: none sent)")
    s3_key_layout: str = Field(
        "footprint/{sha256}{ext}", description="the object key of a file (str.format: {project}, {unti_id}, "
        "{course_id}, {sha256}, {ext}, {filename}); a file already stored with the same hash is not uploaded again "
        "and is referenced where it is, so a layout naming a learner would show that learner's UNTI id in another's "
        "statement when both submitted the same bytes: the default names the content only")
    # the footprint
    actor: Actor = Field(default_factory=Actor)
    profile: Profile = Field(default_factory=Profile)
    facts: list[Fact] = Field(default_factory=lambda: list(ALL_FACTS),
                              description="what becomes statements: enrolment, activity (completion of an activity), "
                                          "grade, completion (of the course), submission (with its files)")
    courses: Literal["managed", "idnumber"] = Field(
        "managed", description="whose footprint is sent: the courses bufsync manages, or every course with an idnumber")
    student_roles: list[str] = Field(default_factory=lambda: ["student"], description="roles that make a learner")
    statements_per_post: int = Field(50, ge=1, le=1000, description="statements in one POST to the LRS")
    max_file_mb: int = Field(512, ge=1, description="a bigger submitted file is not uploaded (its statement says so)")

    _http_url = field_validator("test_lrs_url", "lrs_url", "s3_endpoint", "s3_public_base")(
        classmethod(lambda cls, value: http_url(value) if value else value))
