"""What a release should be, from the owner's configuration (`expect:`) and the team's gate
(approvals): the resolved expectations per package and the checks of a release against them."""
