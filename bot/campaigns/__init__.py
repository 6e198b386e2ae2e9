"""H5 referral campaigns: pages employees and customers share, the share chain, rewards."""
