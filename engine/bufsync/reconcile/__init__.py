"""The generic core: records, situations, plan, guards, apply. It knows mappings, not Moodle."""
