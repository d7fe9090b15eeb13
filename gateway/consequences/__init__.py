"""What a change will do before it is done: its blast radius and the availability checks on it.

`assess.py` reads the cluster (as the requester, within a read budget: `reader.py`) and works out
what a change takes with it — the ownerReference cascade of a delete, everything in a namespace,
the custom resources of a CRD, a claim's volume, the pods a scale-down or a NoExecute taint
removes, the nodes a cordon leaves schedulable, the fields an update changes — into a
`BlastRadius` (`radius.py`: counts and names, never contents). `checks.py` judges one: below a
PodDisruptionBudget, the last ready replica behind a Service, too many unschedulable nodes, a CRD
with live resources, a volume deleted, a namespace of many workloads, OpenKruise delete
protection, GitOps-managed objects. A radius that could not be read whole says "at least", and
every check fires on it: a preview that gave up never lets a change pass.
"""
