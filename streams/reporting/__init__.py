"""The contact centre's KPI report: anonymous figures per window and group, in several formats."""
