"""gate-drill: a venue in network namespaces, outages on a timeline, and the failover KPIs."""
