"""What supervisors and operators read: metrics, charts, exports, status and audit."""
