// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title ExperienceRegistry
/// @notice Nodes register signed batches of experience records (a Merkle root over record CIDs plus
/// the CID of the batch manifest); DAO members vote; a 2/3 majority accepts a batch into the global
/// library. Members are added and removed by a 2/3 vote of the members, never by a single key.
///
/// Who may vote on what: a batch or a membership proposal is voted on by the accounts that were members
/// when it was created (the batch submitted, the proposal made) and still are when they vote. Members
/// added later cannot vote on it; a removed member casts no further votes, and a vote once cast stays
/// counted. Every threshold is measured against `eligible`, the member count when the item was created,
/// so neither removing voters nor adding members can change the count an item must reach.
///
/// What one publisher can cost the members: at most MAX_BATCHES_PER_WINDOW batches per node in a window of
/// `votingWindow` blocks (the registry's epoch), and members' automatic votes reach a non-member's batches
/// only while a member sponsors that node (`sponsorMany`; at most MAX_SPONSORED_PER_MEMBER each, lapsing
/// when the sponsor leaves): a fresh key costs the members nothing until a member vouches for it.
///
/// Decision rule for a batch, with `eligible` = member count when the batch was submitted:
///  - during the voting window it is accepted as soon as up * 3 >= eligible * 2, and rejected as soon
///    as down * 3 > eligible (2/3 of all eligible members can then no longer approve);
///  - after the window, `finalize` accepts it if at least `quorum` members voted and
///    up * 3 >= (up + down) * 2, and rejects it otherwise.
///
/// Certificates of the global library: once an epoch's batches are all decided, each member may attest the
/// root of the global library it computed up to that epoch (and the CID of the document listing its
/// entries); a statement attested by 2/3 of the members eligible then is certified, once and for good. A node
/// that does not fetch every batch reads the certificate instead; a vouched node whose own computation
/// contradicts it marks it disputed (with the CID of its proof), and nodes then compute that epoch themselves.
contract ExperienceRegistry {
    enum State { None, Pending, Accepted, Rejected }

    struct Batch {
        address node;
        uint64 round;
        uint64 deadline; // last block in which votes count
        uint64 epoch; // membershipEpoch when submitted: who may vote
        uint32 eligible;
        uint32 up;
        uint32 down;
        State state;
        bytes32 merkleRoot;
        string batchCid;
    }

    struct MemberProposal {
        address account;
        bool add;
        uint64 deadline;
        uint32 up;
        uint32 down;
        State state;
        uint64 epoch; // membershipEpoch when proposed: who may vote
        uint32 eligible; // member count when proposed: what 2/3 is measured against
    }

    struct Certificate {
        bool certified;
        bool disputed;
        uint32 experiences;
        uint32 eligible; // member count at the epoch's first attestation: what 2/3 is measured against
        uint64 epoch; // membershipEpoch then: who may attest
        bytes32 root; // Merkle root of the global library's entries (zero for an empty library)
        string entriesCid; // the document listing the entries, in a content store
        address disputedBy;
        string proofCid;
    }

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant BATCH_TYPEHASH =
        keccak256("Batch(address node,bytes32 merkleRoot,string batchCid,uint64 round)");
    bytes32 private constant NAME_HASH = keccak256("DSO ExperienceRegistry");
    bytes32 private constant VERSION_HASH = keccak256("1");
    uint256 private constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    uint32 public constant MAX_BATCHES_PER_WINDOW = 4;
    uint32 public constant MAX_SPONSORED_PER_MEMBER = 1024;

    uint64 public immutable votingWindow;
    uint16 public immutable quorumBps;

    mapping(address => bool) public isMember;
    /// @notice Counts membership changes; an item records it at creation.
    uint64 public membershipEpoch;
    /// @notice The membershipEpoch at which an account last became a member.
    mapping(address => uint64) public memberSince;
    address[] private memberList;
    mapping(bytes32 => Batch) private batches;
    mapping(bytes32 => mapping(address => bool)) public hasVoted;
    bytes32[] private batchIds;
    bytes32[] private acceptedIds;
    mapping(address => mapping(uint64 => bool)) public roundUsed;
    MemberProposal[] private proposals;
    /// @notice batches a node registered in each window of `votingWindow` blocks
    mapping(address => mapping(uint64 => uint32)) public batchesInWindow;
    /// @notice the member vouching for a non-member publisher (zero: none)
    mapping(address => address) public sponsorOf;
    mapping(address => uint32) public sponsoredCount;
    mapping(uint256 => mapping(address => bool)) public hasVotedOnProposal;
    mapping(uint64 => Certificate) private certificates;
    mapping(uint64 => mapping(address => bool)) public hasAttested;
    /// @notice attestations per epoch and statement (`statementId`)
    mapping(uint64 => mapping(bytes32 => uint32)) public attestations;

    event BatchSubmitted(bytes32 indexed batchId, address indexed node, uint64 round, bytes32 merkleRoot, string batchCid);
    event Voted(bytes32 indexed batchId, address indexed member, bool approve);
    event BatchAccepted(bytes32 indexed batchId);
    event BatchRejected(bytes32 indexed batchId);
    event MemberProposed(uint256 indexed proposalId, address indexed account, bool add, address proposer);
    event MemberVoted(uint256 indexed proposalId, address indexed member, bool approve);
    event MemberAdded(address indexed account);
    event MemberRemoved(address indexed account);
    event Sponsored(address indexed publisher, address indexed member);
    event Attested(uint64 indexed epoch, address indexed member, bytes32 statement);
    event Certified(uint64 indexed epoch, bytes32 root, uint32 experiences, string entriesCid);
    event Disputed(uint64 indexed epoch, address indexed by, string proofCid);

    error NoMembers();
    error DuplicateMember(address account);
    error BadParameters();
    error InvalidSignature();
    error MalleableSignature();
    error DuplicateBatch(bytes32 batchId);
    error RoundAlreadyUsed(address node, uint64 round);
    error NotMember(address account);
    error UnknownBatch(bytes32 batchId);
    error AlreadyVoted(address member);
    error VotingClosed();
    error VotingOpen();
    error AlreadyDecided();
    error LengthMismatch();
    error UnknownProposal(uint256 proposalId);
    error LastMember();
    error NothingToChange(address account);
    error NotEligible(address member);
    error TooManyBatches(address node, uint64 window);
    error AlreadySponsored(address publisher);
    error SponsorLimit(address member);
    error EpochOpen(uint64 epoch);
    error AlreadyAttested(address member);
    error NotVouched(address account);
    error NotCertified(uint64 epoch);
    error AlreadyDisputed(uint64 epoch);

    modifier onlyMember() {
        if (!isMember[msg.sender]) revert NotMember(msg.sender);
        _;
    }

    constructor(address[] memory initialMembers, uint64 votingWindow_, uint16 quorumBps_) {
        if (initialMembers.length == 0) revert NoMembers();
        if (votingWindow_ == 0 || quorumBps_ > 10_000) revert BadParameters();
        for (uint256 i = 0; i < initialMembers.length; i++) {
            address m = initialMembers[i];
            if (m == address(0) || isMember[m]) revert DuplicateMember(m);
            isMember[m] = true;
            memberList.push(m);
            emit MemberAdded(m);
        }
        votingWindow = votingWindow_;
        quorumBps = quorumBps_;
    }

    // ---------------------------------------------------------------- signatures and batches

    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @notice The id of a batch: its EIP-712 struct hash, so one signed message is one batch.
    function batchId(address node, bytes32 merkleRoot, string calldata batchCid, uint64 round)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(BATCH_TYPEHASH, node, merkleRoot, keccak256(bytes(batchCid)), round));
    }

    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) revert InvalidSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_N) revert MalleableSignature();
        if (v != 27 && v != 28) revert InvalidSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
        return signer;
    }

    /// @notice Register a batch signed by `node`; anyone may relay it.
    function submitBatch(
        address node,
        bytes32 merkleRoot,
        string calldata batchCid,
        uint64 round,
        bytes calldata signature
    ) external returns (bytes32 id) {
        return _register(node, merkleRoot, batchCid, round, signature, false);
    }

    /// @notice Register many signed batches in one transaction: a relay's, anyone may send it. A batch that would
    /// revert alone (bad signature, duplicate, round used, over its node's cap) is skipped, so that one
    /// publisher cannot sink the others' batches. Returns how many were registered.
    function submitBatches(
        address[] calldata nodes,
        bytes32[] calldata merkleRoots,
        string[] calldata batchCids,
        uint64[] calldata rounds,
        bytes[] calldata signatures
    ) external returns (uint256 registered) {
        uint256 n = nodes.length;
        if (merkleRoots.length != n || batchCids.length != n || rounds.length != n || signatures.length != n) {
            revert LengthMismatch();
        }
        for (uint256 i = 0; i < n; i++) {
            if (_register(nodes[i], merkleRoots[i], batchCids[i], rounds[i], signatures[i], true) != bytes32(0)) {
                registered += 1;
            }
        }
    }

    /// @dev A signature's signer, or zero for any signature `_recover` would refuse.
    function _signerOrZero(bytes32 digest, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) return address(0);
        uint8 v = uint8(signature[64]);
        if (uint256(bytes32(signature[32:64])) > HALF_N || (v != 27 && v != 28)) return address(0);
        return ecrecover(digest, v, bytes32(signature[0:32]), bytes32(signature[32:64]));
    }

    /// @dev Register one batch; `lenient`: return zero instead of reverting on any refusal.
    function _register(
        address node,
        bytes32 merkleRoot,
        string calldata batchCid,
        uint64 round,
        bytes calldata signature,
        bool lenient
    ) private returns (bytes32 id) {
        id = batchId(node, merkleRoot, batchCid, round);
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", domainSeparator(), id));
        uint64 window = uint64(block.number) / votingWindow;
        if (lenient) {
            if (node == address(0) || _signerOrZero(digest, signature) != node) return bytes32(0);
            if (batches[id].state != State.None || roundUsed[node][round]) return bytes32(0);
            if (batchesInWindow[node][window] >= MAX_BATCHES_PER_WINDOW) return bytes32(0);
        } else {
            if (_recover(digest, signature) != node) revert InvalidSignature();
            if (batches[id].state != State.None) revert DuplicateBatch(id);
            if (roundUsed[node][round]) revert RoundAlreadyUsed(node, round);
            if (batchesInWindow[node][window] >= MAX_BATCHES_PER_WINDOW) revert TooManyBatches(node, window);
        }
        batchesInWindow[node][window] += 1;
        roundUsed[node][round] = true;
        Batch storage b = batches[id];
        b.node = node;
        b.round = round;
        b.deadline = uint64(block.number) + votingWindow;
        b.epoch = membershipEpoch;
        b.eligible = uint32(memberList.length);
        b.state = State.Pending;
        b.merkleRoot = merkleRoot;
        b.batchCid = batchCid;
        batchIds.push(id);
        emit BatchSubmitted(id, node, round, merkleRoot, batchCid);
    }

    /// @notice Vouch for non-member publishers: members' automatic votes then judge their batches.
    function sponsorMany(address[] calldata publishers) external onlyMember {
        for (uint256 i = 0; i < publishers.length; i++) {
            address p = publishers[i];
            address current = sponsorOf[p];
            if (p == address(0) || (current != address(0) && isMember[current])) revert AlreadySponsored(p);
            if (sponsoredCount[msg.sender] >= MAX_SPONSORED_PER_MEMBER) revert SponsorLimit(msg.sender);
            sponsorOf[p] = msg.sender;
            sponsoredCount[msg.sender] += 1;
            emit Sponsored(p, msg.sender);
        }
    }

    /// @notice Whether a publisher's batches reach members' automatic votes: a member, or sponsored by one.
    function isVouched(address publisher) external view returns (bool) {
        address sponsor = sponsorOf[publisher];
        return isMember[publisher] || (sponsor != address(0) && isMember[sponsor]);
    }

    /// @notice Whether the sender may vote on an item created at membership epoch `epoch`.
    function _eligible(uint64 epoch) private view returns (bool) {
        return isMember[msg.sender] && memberSince[msg.sender] <= epoch;
    }

    /// @param lenient skip (instead of reverting on) a batch that is decided, closed, already voted on by
    /// the sender or not open to it, so that a node can resend a voteMany after a crash without it failing.
    function _vote(bytes32 id, bool approve, bool lenient) private {
        Batch storage b = batches[id];
        if (b.state == State.None) revert UnknownBatch(id);
        if (!_eligible(b.epoch)) {
            if (lenient) return;
            revert NotEligible(msg.sender);
        }
        if (b.state != State.Pending || block.number > b.deadline) {
            if (lenient) return;
            if (b.state != State.Pending) revert AlreadyDecided();
            revert VotingClosed();
        }
        if (hasVoted[id][msg.sender]) {
            if (lenient) return;
            revert AlreadyVoted(msg.sender);
        }
        hasVoted[id][msg.sender] = true;
        if (approve) b.up += 1;
        else b.down += 1;
        emit Voted(id, msg.sender, approve);
        if (uint256(b.up) * 3 >= uint256(b.eligible) * 2) _decide(id, b, true);
        else if (uint256(b.down) * 3 > uint256(b.eligible)) _decide(id, b, false);
    }

    function _decide(bytes32 id, Batch storage b, bool accepted) private {
        if (accepted) {
            b.state = State.Accepted;
            acceptedIds.push(id);
            emit BatchAccepted(id);
        } else {
            b.state = State.Rejected;
            emit BatchRejected(id);
        }
    }

    function vote(bytes32 id, bool approve) external onlyMember {
        _vote(id, approve, false);
    }

    /// @notice Vote on many batches in one transaction; batches already decided, closed or voted on
    /// by the sender are skipped, so resending the same call is harmless.
    function voteMany(bytes32[] calldata ids, bool[] calldata approvals) external onlyMember {
        if (ids.length != approvals.length) revert LengthMismatch();
        for (uint256 i = 0; i < ids.length; i++) {
            _vote(ids[i], approvals[i], true);
        }
    }

    function quorum(uint256 eligible) public view returns (uint256) {
        uint256 q = (eligible * quorumBps + 9_999) / 10_000;
        return q == 0 ? 1 : q;
    }

    /// @notice Decide a batch whose voting window has ended; anyone may call it.
    function finalize(bytes32 id) external {
        Batch storage b = batches[id];
        if (b.state == State.None) revert UnknownBatch(id);
        if (b.state != State.Pending) revert AlreadyDecided();
        if (block.number <= b.deadline) revert VotingOpen();
        uint256 cast = uint256(b.up) + uint256(b.down);
        _decide(id, b, cast >= quorum(b.eligible) && uint256(b.up) * 3 >= cast * 2);
    }

    // ---------------------------------------------------------------- certificates

    /// @notice What a member attests: one epoch's global library (root, size, entries document).
    function statementId(uint64 epoch, bytes32 root, uint32 experiences, string calldata entriesCid)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(epoch, root, experiences, keccak256(bytes(entriesCid))));
    }

    /// @notice Attest the global library computed up to an ended `epoch` (its registrations are over; a member
    /// attests once it saw every batch of it decided); the first statement that 2/3 of the eligible members
    /// attest is certified. One attestation per member and epoch.
    function attest(uint64 epoch, bytes32 root, uint32 experiences, string calldata entriesCid) external onlyMember {
        if (uint256(block.number) < (uint256(epoch) + 1) * uint256(votingWindow)) revert EpochOpen(epoch);
        Certificate storage c = certificates[epoch];
        if (c.eligible == 0) {
            c.eligible = uint32(memberList.length);
            c.epoch = membershipEpoch;
        }
        if (!_eligible(c.epoch)) revert NotEligible(msg.sender);
        if (hasAttested[epoch][msg.sender]) revert AlreadyAttested(msg.sender);
        hasAttested[epoch][msg.sender] = true;
        bytes32 id = statementId(epoch, root, experiences, entriesCid);
        uint32 count = attestations[epoch][id] + 1;
        attestations[epoch][id] = count;
        emit Attested(epoch, msg.sender, id);
        if (!c.certified && uint256(count) * 3 >= uint256(c.eligible) * 2) {
            c.certified = true;
            c.root = root;
            c.experiences = experiences;
            c.entriesCid = entriesCid;
            emit Certified(epoch, root, experiences, entriesCid);
        }
    }

    /// @notice A vouched node whose own computation of `epoch` contradicts its certificate says so, with the
    /// CID of its proof; nodes then compute that epoch from the batches themselves.
    function dispute(uint64 epoch, string calldata proofCid) external {
        address sponsor = sponsorOf[msg.sender];
        if (!isMember[msg.sender] && !(sponsor != address(0) && isMember[sponsor])) revert NotVouched(msg.sender);
        Certificate storage c = certificates[epoch];
        if (!c.certified) revert NotCertified(epoch);
        if (c.disputed) revert AlreadyDisputed(epoch);
        c.disputed = true;
        c.disputedBy = msg.sender;
        c.proofCid = proofCid;
        emit Disputed(epoch, msg.sender, proofCid);
    }

    function certificate(uint64 epoch) external view returns (Certificate memory) {
        return certificates[epoch];
    }

    // ---------------------------------------------------------------- membership

    function proposeMember(address account, bool add) external onlyMember returns (uint256 proposalId) {
        if (account == address(0) || isMember[account] == add) revert NothingToChange(account);
        proposals.push(
            MemberProposal(
                account,
                add,
                uint64(block.number) + votingWindow,
                0,
                0,
                State.Pending,
                membershipEpoch,
                uint32(memberList.length)
            )
        );
        proposalId = proposals.length - 1;
        emit MemberProposed(proposalId, account, add, msg.sender);
    }

    function voteMember(uint256 proposalId, bool approve) external onlyMember {
        if (proposalId >= proposals.length) revert UnknownProposal(proposalId);
        MemberProposal storage p = proposals[proposalId];
        if (!_eligible(p.epoch)) revert NotEligible(msg.sender);
        if (p.state != State.Pending) revert AlreadyDecided();
        if (block.number > p.deadline) revert VotingClosed();
        if (hasVotedOnProposal[proposalId][msg.sender]) revert AlreadyVoted(msg.sender);
        hasVotedOnProposal[proposalId][msg.sender] = true;
        if (approve) p.up += 1;
        else p.down += 1;
        emit MemberVoted(proposalId, msg.sender, approve);
        if (uint256(p.up) * 3 >= uint256(p.eligible) * 2) {
            _applyProposal(p);
        } else if (uint256(p.down) * 3 > uint256(p.eligible)) {
            p.state = State.Rejected;
        }
    }

    function _applyProposal(MemberProposal storage p) private {
        address account = p.account;
        if (p.add) {
            if (isMember[account]) revert NothingToChange(account);
            isMember[account] = true;
            memberList.push(account);
            membershipEpoch += 1;
            memberSince[account] = membershipEpoch;
            emit MemberAdded(account);
        } else {
            if (!isMember[account]) revert NothingToChange(account);
            if (memberList.length == 1) revert LastMember();
            isMember[account] = false;
            uint256 n = memberList.length;
            for (uint256 i = 0; i < n; i++) {
                if (memberList[i] == account) {
                    memberList[i] = memberList[n - 1];
                    memberList.pop();
                    break;
                }
            }
            membershipEpoch += 1;
            emit MemberRemoved(account);
        }
        p.state = State.Accepted;
    }

    // ---------------------------------------------------------------- reading

    function members() external view returns (address[] memory) {
        return memberList;
    }

    function proposal(uint256 proposalId) external view returns (MemberProposal memory) {
        if (proposalId >= proposals.length) revert UnknownProposal(proposalId);
        return proposals[proposalId];
    }

    function proposalCount() external view returns (uint256) {
        return proposals.length;
    }

    function getBatch(bytes32 id) public view returns (Batch memory) {
        if (batches[id].state == State.None) revert UnknownBatch(id);
        return batches[id];
    }

    function batchCount() external view returns (uint256) {
        return batchIds.length;
    }

    function acceptedCount() external view returns (uint256) {
        return acceptedIds.length;
    }

    function _page(bytes32[] storage ids, uint256 offset, uint256 limit)
        private
        view
        returns (bytes32[] memory pageIds, Batch[] memory page)
    {
        uint256 end = offset + limit;
        if (end > ids.length) end = ids.length;
        uint256 n = offset < end ? end - offset : 0;
        pageIds = new bytes32[](n);
        page = new Batch[](n);
        for (uint256 i = 0; i < n; i++) {
            pageIds[i] = ids[offset + i];
            page[i] = batches[pageIds[i]];
        }
    }

    /// @notice All submitted batches in submission order, paginated.
    function getBatches(uint256 offset, uint256 limit)
        external
        view
        returns (bytes32[] memory ids, Batch[] memory page)
    {
        return _page(batchIds, offset, limit);
    }

    /// @notice Accepted batches (the global library) in order of acceptance, paginated.
    function getGlobalExperiences(uint256 offset, uint256 limit)
        external
        view
        returns (bytes32[] memory ids, Batch[] memory page)
    {
        return _page(acceptedIds, offset, limit);
    }

    /// @notice Check that the record with binary CID `cid` is in the batch with root `merkleRoot`.
    function verifyInclusion(bytes32 merkleRoot, bytes calldata cid, bytes32[] calldata proof)
        external
        pure
        returns (bool)
    {
        bytes32 node = keccak256(abi.encodePacked(bytes1(0x00), cid));
        for (uint256 i = 0; i < proof.length; i++) {
            bytes32 sibling = proof[i];
            node = node <= sibling
                ? keccak256(abi.encodePacked(bytes1(0x01), node, sibling))
                : keccak256(abi.encodePacked(bytes1(0x01), sibling, node));
        }
        return node == merkleRoot;
    }
}
